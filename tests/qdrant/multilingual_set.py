"""A small multilingual retrieval set for the trained test model (all-MiniLM-L6-v2 with M3 heads): twelve topics,
each said in English, German, French, Spanish and Chinese; passages are single sentences and seeded mixes of
two to six of them (16 to ~250 tokens); queries are short, in several languages. Used to measure what ColBERT
token pruning costs against full MaxSim (tests/qdrant/test_pruning.py, bench/qdrant_hybrid.py)."""

from __future__ import annotations

import random

TOPICS = [
    ["The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
     "Der Eiffelturm ist ein Turm aus Schmiedeeisen auf dem Marsfeld in Paris.",
     "La tour Eiffel est une tour de fer puddlé située sur le Champ-de-Mars à Paris.",
     "La Torre Eiffel es una torre de hierro forjado situada en el Campo de Marte de París.",
     "埃菲尔铁塔是位于巴黎战神广场的一座锻铁格子塔。"],
    ["Photosynthesis converts light energy into chemical energy stored in sugar.",
     "Die Photosynthese wandelt Lichtenergie in chemische Energie um, die in Zucker gespeichert wird.",
     "La photosynthèse transforme l'énergie lumineuse en énergie chimique stockée dans les sucres.",
     "La fotosíntesis convierte la energía de la luz en energía química almacenada en azúcares.",
     "光合作用是植物把光能转化为化学能的过程。"],
    ["The central bank raised interest rates and the stock market fell sharply.",
     "Der Aktienmarkt fiel nach der Zinsentscheidung der Zentralbank stark.",
     "La banque centrale a relevé ses taux et la bourse a fortement chuté.",
     "El banco central subió los tipos de interés y la bolsa cayó con fuerza.",
     "央行加息后股市大幅下跌。"],
    ["Tokyo is the capital city of Japan and its largest metropolis.",
     "Tokio ist die Hauptstadt Japans und seine größte Metropole.",
     "Tokyo est la capitale du Japon et sa plus grande métropole.",
     "Tokio es la capital de Japón y su mayor metrópoli.",
     "东京是日本的首都，也是最大的城市。"],
    ["French cuisine is famous for its cheeses and its wines.",
     "Die französische Küche ist berühmt für ihre Käsesorten und Weine.",
     "La cuisine française est célèbre pour ses fromages et ses vins.",
     "La cocina francesa es famosa por sus quesos y sus vinos.",
     "法国菜以奶酪和葡萄酒闻名。"],
    ["Python is a programming language that emphasises code readability.",
     "Python ist eine Programmiersprache, die auf gut lesbaren Code Wert legt.",
     "Python est un langage de programmation qui privilégie la lisibilité du code.",
     "Python es un lenguaje de programación que prioriza la legibilidad del código.",
     "Python是一种强调代码可读性的编程语言。"],
    ["Glaciers in the Alps are melting quickly because of global warming.",
     "Die Gletscher der Alpen schmelzen wegen der Erderwärmung schnell.",
     "Les glaciers des Alpes fondent rapidement à cause du réchauffement climatique.",
     "Los glaciares de los Alpes se derriten rápidamente por el calentamiento global.",
     "由于全球变暖，阿尔卑斯山的冰川正在迅速融化。"],
    ["The violin has four strings and is played with a bow.",
     "Die Geige hat vier Saiten und wird mit einem Bogen gespielt.",
     "Le violon a quatre cordes et se joue avec un archet.",
     "El violín tiene cuatro cuerdas y se toca con un arco.",
     "小提琴有四根弦，用琴弓演奏。"],
    ["Vaccines train the immune system to recognise a virus before an infection.",
     "Impfstoffe trainieren das Immunsystem, ein Virus vor einer Infektion zu erkennen.",
     "Les vaccins entraînent le système immunitaire à reconnaître un virus avant l'infection.",
     "Las vacunas entrenan al sistema inmunitario para reconocer un virus antes de la infección.",
     "疫苗训练免疫系统在感染前识别病毒。"],
    ["The football team won the championship after a penalty shootout in the final.",
     "Die Fußballmannschaft gewann die Meisterschaft nach einem Elfmeterschießen im Finale.",
     "L'équipe de football a gagné le championnat après une séance de tirs au but en finale.",
     "El equipo de fútbol ganó el campeonato tras una tanda de penaltis en la final.",
     "这支足球队在决赛点球大战后赢得了冠军。"],
    ["A solar eclipse happens when the Moon passes between the Sun and the Earth.",
     "Eine Sonnenfinsternis entsteht, wenn der Mond zwischen Sonne und Erde steht.",
     "Une éclipse solaire se produit quand la Lune passe entre le Soleil et la Terre.",
     "Un eclipse solar ocurre cuando la Luna pasa entre el Sol y la Tierra.",
     "当月球运行到太阳和地球之间时，就会发生日食。"],
    ["The train to Berlin leaves from platform nine every morning at seven.",
     "Der Zug nach Berlin fährt jeden Morgen um sieben von Gleis neun ab.",
     "Le train pour Berlin part du quai neuf tous les matins à sept heures.",
     "El tren a Berlín sale del andén nueve cada mañana a las siete.",
     "去柏林的火车每天早上七点从九号站台出发。"],
]
SENTENCES = [s for topic in TOPICS for s in topic]

QUERIES = [
    "Wie hoch ist der Eiffelturm aus Schmiedeeisen?",
    "how do plants turn light into chemical energy",
    "energía química de la luz",
    "光合作用 化学能",
    "Aktienmarkt Zinsentscheidung",
    "what is the capital of Japan",
    "fromages et vins français",
    "a musical instrument with strings played with a bow",
    "why are alpine glaciers melting",
    "readable programming language",
    "how do vaccines protect against viruses",
    "penalty shootout final championship",
    "Mond zwischen Sonne und Erde",
    "tren a Berlín por la mañana",
    "interest rates stock market",
    "cuisine et fromage",
    "日本的首都",
    "immune system infection",
    "tour de fer à Paris",
    "Gletscher Erderwärmung Alpen",
]


def passages(n_mixed: int = 140, seed: int = 0) -> list[str]:
    """Every sentence alone, then n_mixed passages of two to six sentences drawn with a fixed seed."""
    r = random.Random(seed)
    mixed = [" ".join(r.sample(SENTENCES, r.randint(2, 6))) for _ in range(n_mixed)]
    return SENTENCES + mixed
